//! GitLab's file formats and protocols, as data (no processes): the `.gitlab-ci.yml` subset
//! skiff understands, and what the runner hands a custom-executor driver.

pub mod ci;
pub mod executor;
pub mod payload;
pub mod pipeline;
