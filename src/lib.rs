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

/// An error and its causes on one line, "a: b: c", as anyhow's `{:#}` writes them: for the
/// job log, helpers reporting on stderr, and errors kept as text.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
