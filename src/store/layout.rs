//! Where things live under a store's root, for callers that only report paths and so do not
//! open (and create) the store.

use std::path::{Path, PathBuf};

/// Unpacked layers, one directory per diff_id.
pub fn layers_dir(root: &Path) -> PathBuf {
    root.join("layers")
}

/// Container state directories.
pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

/// `skiff mount`'s overlays, one directory per image and `skiff unshare` session.
pub fn mounts_dir(root: &Path) -> PathBuf {
    root.join("mounts")
}
