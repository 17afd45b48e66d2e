//! Unpacking one layer into the store, as the `__unpack-layer` helper does it inside the
//! user namespace: extract into a temporary directory, check the diff_id, sync, rename.
//! With no expected diff_id (an import), the directory is named by the digest computed from
//! the very stream it was extracted from, so it is content-addressed all the same.

use super::{Options, Report, UnpackError, remove_tree, unpack, unpack_verified};
use crate::oci::digest::Digest;
use crate::store::Store;
use std::io::Read;

pub fn unpack_into_store(
    store: &Store,
    diff_id: Option<&Digest>,
    input: impl Read,
    opts: &Options,
) -> Result<Report, UnpackError> {
    let io = |op, path: &std::path::Path, e: std::io::Error| UnpackError::Io {
        op,
        path: path.to_path_buf(),
        source: e,
    };
    let lock_err = |e: crate::store::StoreError| {
        io("lock", store.root(), std::io::Error::other(e.to_string()))
    };
    let _unpacking = match diff_id {
        Some(d) => store.lock_unpacking(d).map_err(lock_err)?,
        None => store.lock_unpacking_anonymous().map_err(lock_err)?,
    };
    std::fs::create_dir_all(store.layers_dir()).map_err(|e| io("mkdir", &store.layers_dir(), e))?;
    if let (Some(d), Ok(rd)) = (diff_id, std::fs::read_dir(store.layers_dir())) {
        // Holding the unpacking lock, any other temporary directory of this layer is a
        // leftover of a killed run: clean it now rather than waiting for a prune.
        let prefix = format!("tmp-{}-", d.hex());
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                remove_tree(&e.path())?;
            }
        }
    }
    let tmp = store.layer_tmp(diff_id);
    std::fs::create_dir(&tmp).map_err(|e| io("mkdir", &tmp, e))?;
    let extracted = match diff_id {
        Some(d) => unpack_verified(input, &tmp, opts, d),
        // An import: a root filesystem with nothing in it is not one (a pulled layer may be empty).
        None => unpack(input, &tmp, opts).and_then(|r| {
            if r.entries == 0 {
                Err(UnpackError::Tar(std::io::Error::other(
                    "the tar has no entries",
                )))
            } else {
                Ok(r)
            }
        }),
    };
    let result = extracted.and_then(|report| {
        let final_path = store.layer_path(report.diff_id.as_ref().expect("computed"));
        // Durable before it is visible: a crash never leaves a complete-looking layer.
        let dir = std::fs::File::open(&tmp).map_err(|e| io("open", &tmp, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| io("syncfs", &tmp, e.into()))?;
        match std::fs::rename(&tmp, &final_path) {
            Ok(()) => Ok(report),
            // Someone else finished the same layer first: theirs is as good as ours.
            Err(_) if final_path.is_dir() => {
                remove_tree(&tmp)?;
                Ok(report)
            }
            Err(e) => Err(io("rename", &final_path, e)),
        }
    });
    if result.is_err() {
        let _ = remove_tree(&tmp);
    }
    result
}
