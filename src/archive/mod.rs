//! Images from files: rootfs tarballs (`import`), with podman's `--change` instructions.

pub mod changes;
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
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}
