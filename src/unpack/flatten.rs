//! A whole image into one plain directory, as `umoci unpack` makes it: its layers applied in
//! order, whiteouts as deletions.

use super::{Options, UnpackError, unpack_verified};
use crate::oci::digest::Digest;
use crate::oci::manifest::Descriptor;
use crate::store::Store;
use std::path::Path;

/// Makes `dir` ready to flatten into: created when missing, refused when not empty.
pub fn prepare_empty_dir(dir: &Path) -> Result<(), UnpackError> {
    let io = |op, source| UnpackError::Io {
        op,
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::read_dir(dir) {
        Ok(mut rd) => match rd.next() {
            Some(_) => Err(UnpackError::NotEmpty(dir.to_path_buf())),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| io("creating", e))
        }
        Err(e) => Err(io("reading", e)),
    }
}

/// Applies `layers` (lowest first, with their diff_ids, as `Store::image_layers` gives them)
/// from the store's blobs into `dest`, each verified. Returns the number of tar entries.
pub fn flatten(
    store: &Store,
    layers: &[(Descriptor, Digest)],
    dest: &Path,
    opts: &Options,
) -> Result<u64, UnpackError> {
    let mut entries = 0;
    for (desc, diff_id) in layers {
        let blob = store.blob_path(&desc.digest);
        let f = std::fs::File::open(&blob).map_err(|e| UnpackError::Io {
            op: "opening",
            path: blob.clone(),
            source: e,
        })?;
        let report = unpack_verified(f, dest, opts, diff_id).map_err(|e| UnpackError::Layer {
            digest: desc.digest.clone(),
            source: Box::new(e),
        })?;
        entries += report.entries;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_empty_dir_creates_accepts_empty_refuses_full() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        prepare_empty_dir(&dir).unwrap();
        assert!(dir.is_dir());
        prepare_empty_dir(&dir).unwrap();
        std::fs::write(dir.join("f"), b"x").unwrap();
        let err = prepare_empty_dir(&dir).unwrap_err();
        assert_eq!(err.to_string(), format!("{} is not empty", dir.display()));
    }

    #[test]
    fn a_layer_that_is_not_a_tar_is_named() {
        let (_dir, store, entry) = crate::image::tests::stored_image();
        let layers = store.image_layers(&entry).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let opts = Options::flatten(false, false);
        let err = flatten(&store, &layers, dest.path(), &opts).unwrap_err();
        let UnpackError::Layer { digest, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(digest, &layers[0].0.digest);
        // Without its blob, the error is the file's.
        std::fs::remove_file(store.blob_path(digest)).unwrap();
        let err = flatten(&store, &layers, dest.path(), &opts).unwrap_err();
        assert!(
            matches!(&err, UnpackError::Io { op: "opening", .. }),
            "{err:?}"
        );
    }
}
