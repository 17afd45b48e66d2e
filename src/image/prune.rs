//! Removing images: names first (`rmi`), then whatever no image needs any more (`prune`).

use super::ImageError;
use crate::store::{GcReport, Store};

/// Removes the names `inputs` mean and returns them. A name removes that name; an ID or
/// digest removes every name of the image, but only with `force` when it has several.
pub fn remove_names(
    store: &Store,
    inputs: &[String],
    force: bool,
) -> Result<Vec<String>, ImageError> {
    let mut names = Vec::new();
    for input in inputs {
        let lookup = store.lookup(input)?;
        if lookup.by_name {
            names.extend(lookup.entries.into_iter().map(|h| h.name));
            continue;
        }
        let all = store.names_of(&lookup.entries)?;
        if all.len() > 1 && !force {
            return Err(ImageError::SeveralNames {
                input: input.clone(),
                names: all,
            });
        }
        names.extend(all);
    }
    Ok(store.remove_refs(&names)?)
}

/// Blob gc, then the layer directories no image needs (removed inside the user namespace
/// that owns their files).
pub async fn collect(store: &Store) -> Result<GcReport, ImageError> {
    // Pulls wait while the lock is held, so no layer they are about to name disappears.
    let (report, _gc) = store.gc_holding_lock()?;
    let unused = store.unused_layers()?;
    let mut paths = unused.clone();
    paths.extend(store.stale_mounts());
    crate::unpack::child::remove_paths(&paths).await?;
    Ok(GcReport {
        removed_layers: unused.len(),
        ..report
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn an_id_removes_every_name_only_when_forced() {
        let (_dir, store, entry) = super::super::tests::stored_image();
        let mut desc = entry.manifest.clone();
        desc.annotations = None;
        store
            .set_ref("localhost/two:2", desc, Default::default())
            .unwrap();
        let id = store.lookup("localhost/one:1").unwrap().entries[0]
            .manifest
            .digest
            .hex()[..8]
            .to_string();
        let err = remove_names(&store, std::slice::from_ref(&id), false).unwrap_err();
        assert!(
            matches!(&err, ImageError::SeveralNames { names, .. } if names.len() == 2),
            "{err}"
        );
        assert!(matches!(
            store.lookup_one(&id),
            Err(StoreError::Ambiguous(_))
        ));
        assert_eq!(
            remove_names(&store, &["two:2".to_string()], false).unwrap(),
            ["localhost/two:2"]
        );
        assert_eq!(
            remove_names(&store, std::slice::from_ref(&id), true).unwrap(),
            ["localhost/one:1"]
        );
        assert!(matches!(
            store.lookup(&id),
            Err(StoreError::UnknownImage(_))
        ));
    }
}
