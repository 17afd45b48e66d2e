//! The image service: what the runtime and jobs ask of images. An image is resolved once
//! (manifest, config and layers read from the store a single time) and handed on typed.

use crate::oci::config::ImageConfig;
use crate::oci::digest::Digest;
use std::path::PathBuf;

/// An image in the store, ready to run: everything a container needs of it, read once.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The name it is stored under (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The image ID: the config blob's digest.
    pub id: Digest,
    pub config: ImageConfig,
    /// The unpacked layer directories, top-most first (overlay's `lowerdir` order).
    pub lowers: Vec<PathBuf>,
}
