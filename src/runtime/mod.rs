//! Running things rootless: user namespaces with the user's subordinate ids.

pub mod rootfs;
pub mod shim;
pub mod spec;
pub mod userns;
