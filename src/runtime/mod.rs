//! Running containers rootless: the container and pod APIs, and the shim and helpers that
//! do the work in user namespaces with the user's subordinate ids.

pub mod backend;
pub mod container;
pub mod exec;
pub mod host;
pub mod network;
pub mod plan;
pub mod pod;
// pod.json and the member lock; the public names are re-exported by `pod`.
mod pod_state;
pub mod recovery;
pub mod rootfs;
pub mod shim;
pub mod spec;
pub mod store_helpers;
// The only module allowed `unsafe`: raw process operations, each with a SAFETY note.
pub mod sys;
pub mod tty;
pub mod userns;
