//! The OCI wire types, with no I/O: digests, image references, manifests and indexes with
//! platform selection, and image configs. Everything above reads images through these.

pub mod config;
pub mod digest;
pub mod manifest;
pub mod reference;
