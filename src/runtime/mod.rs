//! Running things rootless: user namespaces with the user's subordinate ids.

pub mod rootfs;
pub mod userns;
