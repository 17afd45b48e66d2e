//! Images from files: rootfs tarballs (`import`), with podman's `--change` instructions;
//! archives (`load`, `save`); the GitLab Runner helper image from its prebuilt tarballs.

pub mod bundle;
pub mod changes;
pub mod helper;
pub mod import;
pub mod load;
pub mod save;

use crate::oci::digest::Digest;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{}: {reason}", source_name)]
    Read { source_name: String, reason: String },
    #[error("invalid --change {instruction:?}: {reason}")]
    Change { instruction: String, reason: String },
    #[error("{0}")]
    Name(#[from] crate::oci::reference::ReferenceError),
    /// A name given to store an image under, reported as parsing reported it.
    #[error(transparent)]
    BadName(crate::oci::reference::ReferenceError),
    #[error("{0}: an imported image is named by a tag, not a digest")]
    DigestName(String),
    /// `PlatformSpec::parse`'s own message.
    #[error("{0}")]
    Platform(String),
    #[error("{}: not a root filesystem tarball: {reason}", source_name)]
    NotRootfs { source_name: String, reason: String },
    #[error("layer {0}: the unpacked content hashes differently from the stored blob")]
    Mismatch(Digest),
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("a loaded image vanished")]
    Vanished,
    #[error(transparent)]
    Helper(#[from] crate::helper::HelperError),
    #[error("no prebuilt-<flavor>-<arch>.tar.xz in {}", list(.searched))]
    NoPrebuilt { searched: Vec<PathBuf> },
    #[error(
        "{reference}: not in the store, no prebuilt tarball (searched {}), and the pull policy is never",
        list(.searched)
    )]
    HelperUnavailable {
        reference: String,
        searched: Vec<PathBuf>,
    },
    /// One prebuilt helper tarball failed (`op` is "loading" or "importing").
    #[error("{op} {}", path.display())]
    Prebuilt {
        op: &'static str,
        path: PathBuf,
        #[source]
        error: Box<ArchiveError>,
    },
    #[error("opening store {}", root.display())]
    OpenStore {
        root: PathBuf,
        #[source]
        error: crate::store::StoreError,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("bundling {image}")]
    Bundling {
        image: String,
        #[source]
        error: Box<crate::image::ImageError>,
    },
    #[error(
        "{reference} is not in the store: run `skiff helper import --version {version}` (or pull it) first"
    )]
    HelperMissing { reference: String, version: String },
    #[error("{0} vanished from the store")]
    Gone(String),
}

fn list(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|d| d.display().to_string()).collect();
    shown.join(", ")
}

/// Where an archive or tarball is read from: a file, or standard input (`-` on the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    /// `-` is standard input, as podman takes it.
    pub fn from_arg(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(arg))
        }
    }

    /// How messages and the image's history name it.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "stdin".into(),
            Input::File(p) => p.to_string_lossy().into_owned(),
        }
    }
}

pub(crate) fn io_err(
    op: &'static str,
    path: &std::path::Path,
    error: std::io::Error,
) -> ArchiveError {
    ArchiveError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}
