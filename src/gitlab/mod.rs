//! GitLab's file formats and protocols, as data (no processes): the `.gitlab-ci.yml` subset
//! skiff understands, what the runner hands a custom-executor driver, and the driver's admin
//! configuration (the runner's `[runners.docker]` keys, with its pull-policy and allow-list
//! rules).

pub mod config;
pub mod executor;
pub mod payload;
pub mod pipeline;
pub mod register;
pub mod yaml;
