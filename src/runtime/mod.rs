//! Running things rootless: user namespaces with the user's subordinate ids.

pub mod backend;
pub mod network;
pub mod pod;
pub mod rootfs;
pub mod shim;
pub mod spec;
// The only module allowed `unsafe`: raw process operations, each with a SAFETY note.
pub mod sys;
pub mod tty;
pub mod userns;
