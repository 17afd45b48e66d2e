//! `skiff bundle create`: every image a pipeline needs (job images, services, the helper) in
//! one docker-archive, to carry into an air-gapped network; `skiff load` reads it back.

use super::ArchiveError;
use super::save::{ArchiveFormat, save};
use crate::helper::HelperSpec;
use crate::image::{Policy, Puller};
use std::path::Path;

/// Writes `images` (pulled when missing) and the helper image of `helper` (which must be in
/// the store already) to `output`; returns the names bundled, in archive order.
pub async fn create(
    puller: &Puller,
    images: &[String],
    helper: Option<&HelperSpec>,
    output: &Path,
) -> Result<Vec<String>, ArchiveError> {
    let store = &puller.store;
    let mut names = Vec::new();
    for image in images {
        let report = puller
            .ensure(image, &[Policy::IfNotPresent])
            .await
            .map_err(|e| ArchiveError::Bundling {
                image: image.clone(),
                error: Box::new(e),
            })?;
        if !names.contains(&report.name) {
            names.push(report.name);
        }
    }
    if let Some(spec) = helper {
        let r = spec.reference()?;
        if store.find(&r)?.is_none() {
            return Err(ArchiveError::HelperMissing {
                reference: r,
                version: spec.version.clone().unwrap_or_default(),
            });
        }
        names.push(r);
    }
    let mut entries = Vec::new();
    for n in &names {
        let entry = store
            .find(n)?
            .ok_or_else(|| ArchiveError::Gone(n.clone()))?;
        entries.push((entry, vec![n.clone()]));
    }
    save(store, &entries, ArchiveFormat::DockerArchive, output)?;
    Ok(names)
}
