//! skiff: a daemonless, rootless OCI executor for CI jobs.
#![deny(unsafe_code)]

pub mod archive;
pub mod auth;
#[doc(hidden)]
pub mod fuzz;
pub mod gitlab;
pub mod helper;
pub mod image;
pub mod job;
pub mod oci;
pub mod proc;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod time;
pub mod unpack;
