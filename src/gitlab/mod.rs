//! GitLab CI: the `.gitlab-ci.yml` subset skiff understands.

pub mod ci;
pub mod pipeline;
